package main

// version is the release sluice was built from, stamped by `make layer`
// with -ldflags "-X main.version=..." (git describe, or the VERSION file).
var version = "dev"
