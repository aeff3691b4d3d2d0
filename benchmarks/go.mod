module github.com/weirhub/weir/benchmarks

go 1.26.0

replace github.com/weirhub/weir => ../

require (
	github.com/dustin/go-humanize v1.1.0
	github.com/weirhub/weir v0.0.0
)

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
)
