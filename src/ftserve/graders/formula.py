"""A multi grader's ``calculate_output``: arithmetic over the sub-graders' scores, through
simpleeval's restricted evaluator (never ``eval``). Operators ``+ - * /`` and ``^`` (power);
functions ``min max abs floor ceil exp sqrt log``."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Iterable, Mapping
from typing import Any

from simpleeval import InvalidExpression, SimpleEval

FUNCTIONS: dict[str, Any] = {
    "min": min,
    "max": max,
    "abs": abs,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}
_OPERATORS: dict[type, Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


class FormulaError(Exception):
    """The formula does not parse, or names something that is neither a score nor a function."""


def _python(formula: str) -> str:
    # OpenAI's formulas write a power as ^; Python's ^ is XOR and binds looser than + and *, so
    # it becomes ** (a power's precedence) rather than a remapped operator.
    return formula.replace("^", "**")


def _evaluator(names: Mapping[str, float]) -> SimpleEval:
    return SimpleEval(operators=dict(_OPERATORS), functions=dict(FUNCTIONS), names=dict(names))


def check(formula: str, names: Iterable[str]) -> None:
    """Raise FormulaError unless ``formula`` parses and uses only ``names`` and the functions."""
    try:
        _evaluator({n: 1.0 for n in names}).eval(_python(formula))
    except (InvalidExpression, SyntaxError) as e:
        raise FormulaError(str(e)) from None
    except (ArithmeticError, ValueError, TypeError):
        pass  # a value-dependent failure (1/(a-1)); scored as an error on the sample it hits


def evaluate(formula: str, scores: Mapping[str, float]) -> float:
    """The formula's value; ArithmeticError/ValueError/TypeError for a value it cannot take."""
    try:
        value = _evaluator(scores).eval(_python(formula))
    except (InvalidExpression, SyntaxError) as e:
        raise FormulaError(str(e)) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("the formula's value is not a number")
    return float(value)
