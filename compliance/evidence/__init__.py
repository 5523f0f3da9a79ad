"""Evidence collectors: live observations of one organisation in its own region."""
