"""Speed, side by side: jaxgan's training loop against the notes' PyTorch code and the best
PyTorch for the same update (`fast`), in fresh processes (`python -m benchmarks`), and where a
step's time goes (`python -m benchmarks.profile_step`).

Run from a checkout; not part of the jaxgan wheel.
"""
