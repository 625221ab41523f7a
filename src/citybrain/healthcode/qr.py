"""QR rendering of codes with segno: alphanumeric mode (base45 and the prefixes are within
its character set, about 5.5 bits a character instead of 8) and error correction Q, as the
EU DCC recommends: a code on a cracked or glaring phone screen still reads."""

from __future__ import annotations

import io

import segno

ERROR_CORRECTION = "q"
# Quiet zone of four modules, as the QR standard asks; scanners fail more often without it.
BORDER = 4


def qr(text: str) -> segno.QRCode:
    """The QR symbol of ``text`` (alphanumeric when the text allows, bytes otherwise)."""
    try:
        return segno.make_qr(text, error=ERROR_CORRECTION, mode="alphanumeric", boost_error=False)
    except ValueError:
        return segno.make_qr(text, error=ERROR_CORRECTION, boost_error=False)


def qr_svg(text: str, *, scale: int = 4, title: str | None = None) -> str:
    """The QR of ``text`` as an SVG document (for pages: sharp at any size)."""
    buffer = io.BytesIO()
    qr(text).save(
        buffer,
        kind="svg",
        scale=scale,
        border=BORDER,
        xmldecl=False,
        svgns=True,
        title=title,
        svgclass="qr",
        lineclass=None,
    )
    return buffer.getvalue().decode("utf-8")


def qr_png(text: str, *, scale: int = 6) -> bytes:
    """The QR of ``text`` as a PNG image (black on white)."""
    buffer = io.BytesIO()
    qr(text).save(buffer, kind="png", scale=scale, border=BORDER)
    return buffer.getvalue()
