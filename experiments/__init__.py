"""The sweeps: `python -m sweeps.launch --config experiments/<name>.py[:arg]` (sweep_base.py says what they share)."""
