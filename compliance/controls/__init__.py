"""Control catalogs per framework (issue 13): data files loaded and validated by ``catalog``."""
