"""ftserve: a self-hosted fine-tuning service speaking the OpenAI fine-tuning wire protocol."""

__version__ = "0.1.0"
