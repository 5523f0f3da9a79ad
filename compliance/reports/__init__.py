"""Compliance reports (issue 13, item 4): one ``ReportDocument`` per organisation,
framework and period (``model.assemble``), rendered as a PDF a person reads, a versioned
JSON document with a published schema, a CSV evidence workbook, a signed evidence ZIP,
the GDPR Art. 30 record of processing activities and an OSCAL assessment-results export;
and a data subject's "who accessed my data" extract as a PDF.

Rendering is pure: every function here takes its inputs and returns (or writes) bytes,
so the background job, the API and the CLI decide where the bytes go.
"""
