module github.com/trackd-dev/trackd/bench/httpload

go 1.24.0
