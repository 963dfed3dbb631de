"""Test support shared by tests/ and bench/: real tiny batches, scripted participants, fake attack files."""
