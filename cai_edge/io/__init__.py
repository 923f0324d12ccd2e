"""Reading what users bring (FITS cutouts, catalogs, partitions) and writing partitions; torch-free."""
