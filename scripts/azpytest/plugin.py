"""pytest plugin (fixtures arrive with the connections issue)."""
