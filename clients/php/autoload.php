<?php

// For use without Composer: require this file and every Trackd\ class loads from src/
// (Composer users get the same from composer.json's PSR-4 map).
spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'Trackd\\')) {
        $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, 7)) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
