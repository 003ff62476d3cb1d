"""Faces in real photos: detection and landmarks, FFHQ alignment, framing for the embedded generator,
and the face chips that dlib-style networks read."""
