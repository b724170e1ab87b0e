"""The data node: files at deterministic DRS URLs, THREDDS catalogs, OPeNDAP, access control."""
