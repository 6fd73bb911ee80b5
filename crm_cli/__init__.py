"""The `crm` command: database, demo data and user administration for operators and scripts."""
