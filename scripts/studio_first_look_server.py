"""The server ``studio_first_look_timing.py`` starts: the studio with the embedded default and a random conv encoder
(as tests/test_studio_browser.py's encoder server), its upload, encoder, F and paste steps logged with wall-clock
times (ms) to the file named by the last argument.

Arguments: upload folder, port, steps scale, log file.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any


def main() -> None:
    uploads, port, steps_scale, log = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    from magec.studio.app import configure_gradio

    configure_gradio(uploads)  # before Gradio is imported
    import torch
    from torch import nn

    import magec.studio.photo_inputs as inputs
    from magec.encoders.base import Encoder
    from magec.faces.detection import LandmarkDetector
    from magec.pipeline import load_pipeline
    from magec.studio.app import serve
    from magec.studio.session import Studio

    class ConvEncoder(Encoder):
        spec, resolution, space = "test-conv-encoder", 64, "z"

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            layers: list[nn.Module] = []
            width = 3
            for out in (32, 64, 128, 256):
                layers += [nn.Conv2d(width, out, 4, 2, 1), nn.LeakyReLU(0.2)]
                width = out
            self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(256 * 4 * 4, 100))

        def encode_resized(self, images: torch.Tensor) -> torch.Tensor:
            return self.net(images)

    events = open(log, "a")  # noqa: SIM115 - written until the server stops

    def logged(owner: Any, name: str) -> None:
        inner = getattr(owner, name, None)
        if inner is None:  # a step another source tree does not have
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            started, cpu = time.time(), time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                label = f"{name} cpu {(time.thread_time() - cpu) * 1000:.0f}"
                events.write(json.dumps([label, started * 1000, time.time() * 1000]) + "\n")
                events.flush()

        setattr(owner, name, timed)

    for name in (
        "read_upload",
        "_frame_ahead",
        "_encoded",
        "instant_projection",
        "captions",
        "projection_image",
        "refine",
    ):
        logged(Studio, name)
    logged(LandmarkDetector, "detect")
    logged(inputs, "_drawn")
    logged(inputs, "_captions")
    logged(inputs, "pasted_photo")
    pipeline = load_pipeline(None, "cpu", perceptual="describer-features")
    studio = Studio(replace(pipeline, encoder=ConvEncoder().eval()), steps_scale=steps_scale, upload_root=uploads)
    app = serve(studio, "127.0.0.1", port, None, block=False)
    try:
        while app.is_running:
            time.sleep(0.1)
    finally:
        app.close()
        studio.close()


if __name__ == "__main__":
    main()
