<?php

declare(strict_types=1);

namespace Trackd;

/** A flag variable was read with a getter of another type than its own. */
class VariableTypeError extends \TypeError
{
}
