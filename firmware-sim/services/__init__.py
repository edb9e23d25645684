"""The services Ruche runs beside itself on one machine, for tests, the demo and the
benchmarks: Mosquitto on Ruche's generated configuration (`mosquitto`) and a private
InfluxDB 1.x (`influxd`), each a child process (`process`). A site runs its own."""
