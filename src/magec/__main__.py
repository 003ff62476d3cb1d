import sys

from magec.cli.main import main

sys.exit(main())
