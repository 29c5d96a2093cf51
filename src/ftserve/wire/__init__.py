"""The wire's declarations framework: each request body, query-parameter set and response
object is declared once, and the checks, the builders and the OpenAPI document derive from it.

- :mod:`.fields`: request bodies as :class:`~.fields.Field` tables (nested objects, arrays,
  enums, patterns), checked with OpenAI's wording and codes, and their JSON Schemas;
- :mod:`.shapes`: response objects as :class:`~.shapes.Shape` (keys in wire order, schemas,
  constant members), which builders make their objects through;
- :mod:`.queries`: a list's ``after``/``limit`` (bounds from the server's settings);
- :mod:`.operations`: the vocabulary of the per-domain ``openapi`` modules;
- :mod:`.metadata`, :mod:`.metrics`: shapes shared by several domains.

The per-domain declarations live with their domain (``jobs/schemas.py``, ``files/schemas.py``,
…); ``ftserve.api.openapi`` assembles them. Hand-written rather than on msgspec: msgspec would
validate faster, but its errors cannot be worded as OpenAI's (``Invalid 'n_epochs': integer
above maximum value. Expected a value <= 50, but got 51 instead.``, code
``integer_above_max_value``), which the SDKs and clients' tests read, so every check would be
written a second time around it anyway.
"""
