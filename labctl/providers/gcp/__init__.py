"""The GCP sandbox provider: a labelled slice of a project, inventory by the session label (google-cloud-compute)."""
