"""National eID checks of visitors (issue 16): the Criipto Verify client
(``criipto.py``), the attempts and verified identities (``store.py``) and the visitor's
pages (``pages.py``)."""
