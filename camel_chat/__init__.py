"""camel_chat: conversation data → fine-tuned chat models → served over FastChat's protocol.

The package imports nothing heavy at import time; each command lives in its own module
(`python -m camel_chat.<area>.<command>`).
"""

__version__ = "2.0.0"
