package main

import "github.com/spf13/cobra"

func newGetCmd(sf *settingsFlags) *cobra.Command {
	return &cobra.Command{Use: "get URL", Hidden: true}
}
