"""Graders: the declarations OpenAI's fine-tuning graders share, their templates and scoring,
and the ``/fine_tuning/alpha/graders`` endpoints."""
