"""Reading and writing files safely: images, atomic outputs, restricted unpickling."""
