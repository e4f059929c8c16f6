module github.com/sluice-logs/sluice

go 1.26
