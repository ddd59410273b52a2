"""Agentok Studio's own sample tools, as upstream ships them (db/sql/sample_data.sql of dustland/agentok), for
tests of python tools: the service must take them as written."""

from __future__ import annotations

# The Calculator: a type alias beside the function, Annotated for the operator, no docstring.
CALCULATOR = (
    "from typing import Annotated, Literal\n\n"
    'Operator = Literal["+", "-", "*", "/"]\n\n\n'
    'def calculator(a: int, b: int, operator: Annotated[Operator, "operator"]) -> int:\n'
    '    if operator == "+":\n'
    "        return a + b\n"
    '    elif operator == "-":\n'
    "        return a - b\n"
    '    elif operator == "*":\n'
    "        return a * b\n"
    '    elif operator == "/":\n'
    "        return int(a / b)\n"
    "    else:\n"
    '        raise ValueError("Invalid operator")'
)
