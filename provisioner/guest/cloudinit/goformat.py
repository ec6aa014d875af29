"""Go's ``%q`` and ``%v`` formatting, which coreos-cloudinit's output uses."""

from __future__ import annotations

import decimal
import math

_ESCAPES = {
    "\a": r"\a",
    "\b": r"\b",
    "\f": r"\f",
    "\n": r"\n",
    "\r": r"\r",
    "\t": r"\t",
    "\v": r"\v",
}


def quote(text: str) -> str:
    """``%q`` of a string: double quotes, backslash escapes for the unprintable."""
    out = ['"']
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif not char.isprintable():
            code = ord(char)
            out.append(
                f"\\x{code:02x}"
                if code < 0x80
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def value(item: object) -> str:
    """``%v`` of a config value: ``true``/``false``, ``2``, ``0.5``, text as is."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, float):
        return _float(item)
    if isinstance(item, bytes):
        return item.decode("utf-8", errors="replace")
    return str(item)


def _float(number: float) -> str:
    """Go's shortest ``%g``: exponent form when the exponent is < -4 or >= 6 (or >= digits)."""
    if math.isnan(number) or math.isinf(number) or number == 0:
        return {0.0: "0", math.inf: "+Inf", -math.inf: "-Inf"}.get(number, "NaN")
    sign = "-" if number < 0 else ""
    parsed = decimal.Decimal(repr(abs(number))).normalize().as_tuple()
    digits = "".join(str(d) for d in parsed.digits)
    point = len(digits) + int(parsed.exponent)  # digits before the decimal point
    exponent = point - 1
    eprec = 6
    if eprec > len(digits) >= point:
        eprec = len(digits)
    if exponent < -4 or exponent >= eprec:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"
