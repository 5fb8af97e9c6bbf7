module github.com/athomic-go/rtx/integration

go 1.26.0

replace github.com/athomic-go/rtx => ../

require go.uber.org/goleak v1.3.0
