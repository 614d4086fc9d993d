//go:build race

package main

// raceEnabled is true when the tests run with the race detector; the
// worker and the simulator are then built with it too.
const raceEnabled = true
