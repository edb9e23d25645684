"""Putting the server on a machine: `ruche server init` (config, the site's CA and
certificates, Mosquitto's configuration, the database, the first admin key), the
systemd units, backups."""
