"""Results side of smart-study: tables, figures and statistics from responses and attacks.

Never imports torch.
"""

__version__ = "0.1.0"
