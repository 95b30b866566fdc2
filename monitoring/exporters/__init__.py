"""Exporters we ship ourselves (deployed by playbooks/roles/exporters)."""
