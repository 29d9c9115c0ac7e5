"""Fine-tuning support for ``training/train.py``: data, model preparation, objective, checkpoints.

Nothing here imports accelerate at module level; the script owns the distributed loop.
"""
