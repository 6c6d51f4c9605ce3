"""Face detector plug-ins (see models.plugins)."""
