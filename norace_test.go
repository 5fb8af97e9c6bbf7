//go:build !race

package rtx

const raceEnabled = false
