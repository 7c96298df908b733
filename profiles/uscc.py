"""统一社会信用代码 (GB 32100-2015): normalisation and the check character."""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}


class UsccError(ValueError):
    """A code that fails one named rule (length, alphabet, check character), in Chinese."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def check_character(body: str) -> str:
    """Check character for the first 17 characters.

    >>> check_character("91110000600037341")
    'L'
    """
    total = sum(_VALUE[ch] * w for ch, w in zip(body, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def normalize_uscc(raw: str) -> str:
    """Trim, upper-case and verify; returns the code or raises :class:`UsccError`.

    >>> normalize_uscc(" 91440300708461136t ")
    '91440300708461136T'
    """
    code = str(raw).strip().upper()
    if len(code) != 18:
        raise UsccError("length", f"统一社会信用代码应为18位，当前为{len(code)}位")
    bad = [ch for ch in code if ch not in _VALUE]
    if bad:
        shown = "、".join(dict.fromkeys(bad))
        raise UsccError(
            "alphabet",
            f"统一社会信用代码含有不允许的字符“{shown}”（不使用字母I、O、S、V、Z，请核对是否把0写成了O、1写成了I）",
        )
    expected = check_character(code[:17])
    if code[17] != expected:
        raise UsccError(
            "check",
            f"统一社会信用代码校验位不符：第18位应为“{expected}”，实际为“{code[17]}”，请核对是否有字符录入错误",
        )
    return code


def is_valid_uscc(raw: str) -> bool:
    try:
        normalize_uscc(raw)
    except UsccError:
        return False
    return True
