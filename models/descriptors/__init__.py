"""Face descriptor plug-ins (see models.plugins)."""
