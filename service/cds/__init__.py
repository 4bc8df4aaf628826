"""CDS Hooks (Da Vinci CRD): discovery, client authentication, the order hooks, feedback."""
