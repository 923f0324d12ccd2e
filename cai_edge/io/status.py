"""Per-galaxy status codes, written to the ``status`` column of every output row."""

OK = "ok"
UNREADABLE = "unreadable"  # corrupt, truncated or not a FITS/NPZ file
BAD_SHAPE = "bad_shape"  # wrong band count, too small, not an image
NONFINITE_PIXELS = "nonfinite_pixels"  # NaN or inf in the central crop
MISSING_BANDS = "missing_bands"  # single-band files: a band's file is absent
MISSING_MAGNITUDES = "missing_magnitudes"  # absent, NaN or a sentinel such as -9999
BAD_MAGNITUDES = "bad_magnitudes"  # non-numeric or implausible
DUPLICATE_ID = "duplicate_id"  # the id was seen before (in the inputs or the catalog)

NONFINITE_PREDICTION = "nonfinite_prediction"  # the model returned NaN or inf for this galaxy

ALL = (OK, UNREADABLE, BAD_SHAPE, NONFINITE_PIXELS, MISSING_BANDS, MISSING_MAGNITUDES, BAD_MAGNITUDES, DUPLICATE_ID, NONFINITE_PREDICTION)
WRONG_UNITS = "wrong_units"  # the header declares pixel units with no defined conversion to nanomaggies
BAD_BANDS = "bad_bands"  # the header names bands that are not u,g,r,i,z once each
WRONG_MAGNITUDE_SYSTEM = "wrong_magnitude_system"  # magnitudes declared in another system than the model's

ALL = ALL + (WRONG_UNITS, BAD_BANDS, WRONG_MAGNITUDE_SYSTEM)
BAD_ID = "bad_id"  # the id cannot be written exactly (too long, not Unicode, or not holdable by the output format)

ALL = ALL + (BAD_ID,)
