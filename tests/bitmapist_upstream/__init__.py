"""bitmapist's own test suite, vendored (BSD 3-Clause: see LICENSE), run on the drop-in.

README.md says where each file comes from and what was changed.
"""
