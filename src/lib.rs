//! kvkeep: backup and restore of Azure Key Vault objects.
