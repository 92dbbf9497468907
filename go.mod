module github.com/sessiontier/sessiontier

go 1.26

require (
	github.com/hashicorp/golang-lru/v2 v2.0.7 // indirect
	github.com/sony/gobreaker/v2 v2.4.0 // indirect
)
