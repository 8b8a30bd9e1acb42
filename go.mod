module sluice

go 1.26

require github.com/miekg/dns v1.1.73

require (
	github.com/d--j/go-milter v0.10.1 // indirect
	github.com/emersion/go-message v0.18.2 // indirect
	golang.org/x/text v0.40.0 // indirect
)

require (
	golang.org/x/net v0.57.0 // indirect
	golang.org/x/sys v0.47.0
)
