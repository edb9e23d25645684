"""What tests, benchmarks and the demo share to stand a site up and watch it: waiting for
a condition (`waits`), recording what the server's seams are told (`fakes`), and a site
built through the registry's own functions (`sites`)."""
