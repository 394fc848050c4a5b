"""JSON text of small flat values, without the encoder's set-up.

``json.dumps`` builds an encoder for every call, which costs more than encoding a few short
strings; the receiver writes such JSON twice per webhook (the answer, and the arguments inside
the queued message). For a dict of strings or a list of strings the text is joined here from the
same C escaper the encoder uses; anything else goes to ``json.dumps``.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _quoted
from typing import Any


def dumps(value: Any) -> str:
    """Exactly ``json.dumps(value)`` (default separators, ASCII output)."""
    kind = type(value)
    try:
        if kind is dict:
            return "{" + ", ".join([f"{_quoted(k)}: {_quoted(v)}" for k, v in value.items()]) + "}"
        if kind is list:
            return "[" + ", ".join(map(_quoted, value)) + "]"
    except TypeError:  # a key or value that is not a string: the escaper takes only strings
        pass
    return json.dumps(value)
