"""psf/requests' own test suite, run with the adapter mounted on every new Session."""
