"""``magec studio``: a local web page to invert and edit your own photo, and the paper's blind user study.

- ``jobs``     one inversion per device at a time (a queue with progress and cancel), any number of viewers
- ``session``  what the page does, without the page: framing uploads, inverting, rendering slider values
- ``study``    the user study (paper Fig. 5): the pool of edits, judgements in SQLite, the report
- ``app``      the Gradio page on top (imported only by ``magec studio``)
- ``photo_inputs``  the Editor's photo inputs, and with an encoder the instant first look refined in the queue
- ``widgets``  what the page's handlers share (messages, progress line, rendered images)
- ``bench``    the studio's figures for ``magec bench``
"""
