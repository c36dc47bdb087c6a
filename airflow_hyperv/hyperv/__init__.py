"""Pure Hyper-V domain: typed records with the real enum values, cmdlet-pipeline builders and error
classification. Nothing here does I/O or imports a transport, so DAG files can import it cheaply."""
