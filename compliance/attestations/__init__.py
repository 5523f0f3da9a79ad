"""Attestations: the controls of a catalog that no evidence can decide are met by a
statement an owner signs (who, when, until when), kept as an audit record."""
