"""Faces in real photos: detection and landmarks, framing them for a generator (``face-crop`` / ``align``, and
the ``FaceFrame`` each framing records), pasting edits back, and the face chips that dlib-style networks read."""
