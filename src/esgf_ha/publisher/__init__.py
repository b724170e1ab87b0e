"""The publisher: scan netCDF files into ESGF records and publish them to the master index."""
