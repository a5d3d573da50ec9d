"""Length units of microscopy files (OME, NGFF, ImageJ) in µm."""

import re

# Length units → µm. Keys are matched exactly first (OME is case-sensitive:
# "Mm" is a megametre), then lower-cased against the lower-case keys.
_UM_PER_UNIT = {
    "Ym": 1e30, "Zm": 1e27, "Em": 1e24, "Pm": 1e21, "Tm": 1e18, "Gm": 1e15, "Mm": 1e12,
    "km": 1e9, "hm": 1e8, "dam": 1e7, "m": 1e6, "dm": 1e5, "cm": 1e4, "mm": 1e3,
    "µm": 1.0, "μm": 1.0, "um": 1.0, "nm": 1e-3, "pm": 1e-6, "fm": 1e-9,
    "Å": 1e-4, "å": 1e-4,
}
_UM_PER_UNIT_LOWER = {
    "meter": 1e6, "metre": 1e6, "meters": 1e6, "metres": 1e6,
    "centimeter": 1e4, "centimetre": 1e4, "millimeter": 1e3, "millimetre": 1e3,
    "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "micrometers": 1.0, "micrometres": 1.0,
    "nanometer": 1e-3, "nanometre": 1e-3, "nanometers": 1e-3, "nanometres": 1e-3,
    "angstrom": 1e-4, "in": 25400.0, "inch": 25400.0, "inches": 25400.0,
    "um": 1.0, "µm": 1.0, "μm": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6,
}


def unit_to_um(unit):
    """µm per ``unit`` (a length unit spelled as OME, NGFF, ImageJ or a person
    would), or ``None`` when the unit is not a length (e.g. ImageJ's "pixel")."""
    if unit is None:
        return None
    unit = str(unit).strip()
    # ImageJ writes µ as the literal escape "\u00B5" in its ASCII description.
    unit = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), unit)
    # A UTF-8 "µ" decoded as cp1252 becomes "Âµ".
    unit = unit.replace("Âµ", "µ")
    if unit in _UM_PER_UNIT:
        return _UM_PER_UNIT[unit]
    return _UM_PER_UNIT_LOWER.get(unit.lower())
